"""PBT and PB2 (with mixed categorical inputs) tuning PPO/DrAC on Procgen (Parker-Holder et al.,
NeurIPS 2021), in PyTorch."""
