"""Shipped training configs, installed with the package so that `rllib train file NAME`
finds them from any folder (`rllib train file ppo_passive_match_ur_lstm`).

Each ``ppo_<task>_match_<cell>.py`` defines `config` and `stop`; `visual_match_common.py`
holds their shared builder and its environment-variable knobs. `supervised/*.yaml` are the
supervised experiments' option files.
"""
