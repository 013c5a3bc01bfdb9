"""The lowest layer of voxsurv: what every other part shares and nothing in it knows about maps,
statistics, networks or bundles. Errors that name patient, file and fix (errors), files written
whole or not at all (atomic_files; JSON: jsonfile; CSV and text: tables), output folders
(output_paths, patient_folders), DICOM identifiers kept out of logs (privacy), terminal output
(console), where the bundles live (bundle_paths), import paths that moved (renamed, upgrade_paths).

It imports nothing from the rest of the project (checked by the import-linter contract in
setup.cfg), so voxsurv.maps, voxsurv.stats, custom_transforms and networks may use it freely.
"""
