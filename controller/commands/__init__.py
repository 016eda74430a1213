"""The commands of `tunefleet`, by what they act on; controller/cli.py registers them."""
