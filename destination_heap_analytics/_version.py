"""The connector's version, defined here and nowhere else.

setup.py reads this file without importing the package (whose imports need airbyte-cdk), and
unit_tests/test_packaging.py checks that metadata.yaml, the Dockerfile and the docs changelog
carry the same value. To release, change it here and in those three places.
"""

__version__ = "0.4.0"
