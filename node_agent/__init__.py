"""tunefleet node agent: stdlib only, Python >= 3.7, shipped to each host as one zipapp."""
