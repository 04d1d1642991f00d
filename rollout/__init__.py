"""Generation engines behind one async interface (the Engine protocol of DESIGN.md).

Never imports ray. The engine itself arrives with the rollout-engine issue.
"""
