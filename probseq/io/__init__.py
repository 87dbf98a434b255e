"""File formats and pictures: MIDI, BVH, ASF/AMC, piano-roll files, safe unpickling, GIF and plots.

Each format is one module; :mod:`probseq.io.media` maps a dataset's kind of sample to the writer
that turns it into a file. Datasets and batches live in :mod:`probseq.data`.
"""
