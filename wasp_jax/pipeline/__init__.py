"""The WASP loop: workdir and run state, the rounds, generation, the DP vote, selection."""
