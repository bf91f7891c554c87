"""Training of the three HiPART stages (tokenizer, generator, lifter): schedules, a resumable loop, stage recipes."""
