"""A small stand-in of the AUTOMATIC1111 modules EasyPhoto calls (the host is the one thing we
may fake in CI; the real host is exercised outside CI, see DESIGN.md §4)."""
