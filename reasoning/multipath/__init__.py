"""Multi-path reasoning: k samples of one problem, voting, and pruning of redundant paths."""
