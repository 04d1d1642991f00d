"""Synthetic GSM8K-style word problems that a model of a few million parameters can learn.

- config.py: WordMathConfig (`task.wordmath`): step range, frames, number ranges, counts,
  seed, tokenizer size;
- fragments.py: the parts of a problem (one sub-quantity about one person, with its
  sentence and steps), in two worlds (things people have, dollars people spend);
- templates.py: frames that combine one to three parts (total, share, left, compare,
  times) and the templates a setting allows;
- problems.py: drawing problems (deterministic by seed), keys, train/val splits;
- counting.py: the exact number of distinct problems of a setting;
- rows.py: GSM8K-style problem rows (with the solution's structure) and chat SFT rows;
- parallel_traces.py: worked solutions with independent parts in parallel threads, as the
  parallel controller's episode rows (SFT data);
- tokenizer.py: a byte-level BPE with a ChatML template trained on generated problems.
The `wordmath` task (reasoning/tasks/wordmath.py) is the `math` task on these problems.
"""
