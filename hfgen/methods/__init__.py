"""Each model family's mathematics as plain torch: no Accelerate, no file I/O, no network built here.

One module per family:

- ``flow_matching``: paths, training times, the CFM loss; ``couplings``: exact OT, Sinkhorn, ``couple``;
- ``continuous_flows``: the ODE solver wrapper and log-densities by the instantaneous change of variables;
- ``ddpm``: the ε-loss; ``score_matching``: denoising and explicit score matching, Vincent's gap, smoothed mixture
  scores; ``solver_order``: orders of fixed-step ODE solvers;
- ``schrodinger_bridge``: reference chains, mean matching, the Gaussian closed form;
- ``vae``: the VAE and autoencoder objectives; ``neighbor_embedding``: k-NN graphs and the UMAP-style loss;
- ``mixtures``: EM, k-means++, a gradient fit; ``kde``: bandwidth selection by held-out likelihood;
- ``cnf``: the maximum-likelihood loss of a continuous normalising flow (FFJORD);
- ``rbm``: CD/PCD, exact enumeration, pseudo-likelihood, AIS; ``energy``: the maximum-likelihood loss, a replay
  buffer, Langevin chains, log Z by quadrature.
"""
