"""Heap's side: the HTTP client of its server-side APIs, its documented limits (each with its
source URL), and the sanitiser that keeps record contents out of every message."""
