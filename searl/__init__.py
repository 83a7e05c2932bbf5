"""SEARL: Sample-Efficient Automated Deep RL (Franke et al., ICLR 2021), in PyTorch."""
