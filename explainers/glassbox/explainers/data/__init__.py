"""What the servers load and draw: files from storage, PyTorch artifacts, reference rows, distances to
the nearest of them, and PNG pictures of what was found."""
