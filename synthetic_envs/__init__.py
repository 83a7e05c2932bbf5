"""Learned synthetic environments (SEs) and reward networks (RNs), Ferreira et al., ICLR 2022."""
