"""Controllers drive an Engine (rollout/engine.py) through one episode of a thread protocol."""
