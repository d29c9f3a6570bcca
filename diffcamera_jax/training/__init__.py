"""Training: the trainer loop, the jitted step, its sharded state, checkpoints and fault handling."""
