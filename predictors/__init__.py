"""Accuracy predictors (GCN, BRP, GIN, DONNA/LANA signature models); installed as ``blox_env.predictors``."""
