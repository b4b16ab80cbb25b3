"""rlspec: an online reinforcement-learning controller for speculative decoding.

The vocabulary (DESIGN.md section 2): a Backend (simulator or live vLLM) emits a
Snapshot after every engine iteration; the feature function turns a snapshot history
into an observation; a Controller maps it to an Action (draft length k, or drafter
offloaded).
"""

__version__ = "0.1.0"
