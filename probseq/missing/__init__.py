"""Missing values: the observed part's likelihood, training on it, and infilling (issue 21).

A :class:`~probseq.data.batch.Batch` marks missing values with ``observed`` (NaN in the input);
padding stays what ``lengths`` says. :mod:`probseq.missing.scoring` computes and labels the
likelihood of the observed part, :mod:`probseq.missing.particles` is the particle filter behind the
recurrent models' estimates and completions, :mod:`probseq.missing.infill` draws completions.
"""
