# Kept for tools that still call setup.py directly; configuration is in setup.cfg.
from setuptools import setup

setup()
