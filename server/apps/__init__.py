"""The reference worker's apps (a real IOTile server replaces them and keeps their message contract)."""
