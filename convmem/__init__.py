"""convmem."""
