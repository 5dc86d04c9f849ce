"""longlab.analysis: numbers about attention (costs, where attention mass goes) that figures plot."""
