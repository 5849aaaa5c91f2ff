"""Data for blox-env: the Zarr model store, official release import, images, graphs, builder.

Installed as ``blox_env.datasets`` (never as a top-level ``datasets`` package).
"""
