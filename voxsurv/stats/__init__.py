"""Survival statistics as small functions (lifelines style), each checked against R where R has it:
C-index and td-AUC, Kaplan-Meier, log-rank and the median split, calibration and the Breslow
baseline, decision curves, the paired bootstrap, Table 1; and the Cox partial-likelihood loss.
Framework-free (numpy, scipy, lifelines, scikit-survival; torch only for the loss): the Ignite/MONAI
handler that computes the C-index inside a training workflow lives in voxsurv.training.concordance."""
