"""Vision-Mamba survival network and its exact CPU selective scan."""

from networks.selective_scan import selective_scan
from networks.vision_mamba import VisionMambaSurv

__all__ = ["VisionMambaSurv", "selective_scan"]
