"""Building blocks of `repclass.simulate`: the vectorised V(D)J sampler and motif implants."""
