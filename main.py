"""Legacy entry point: `python main.py spec|check|write`."""

from destination_heap_analytics.run import run

if __name__ == "__main__":
    run()
