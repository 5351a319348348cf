"""Packaging for the distribution airbyte-destination-heap-analytics.

The distribution name follows Airbyte's `airbyte-<connector name>` convention, under which
PyAirbyte looks up the installed version. The import package stays `destination_heap_analytics`
and the console script stays `destination-heap-analytics`, the connector's name, which Airbyte's
image entry point and PyAirbyte both run.
"""

import runpy
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
PACKAGE = "destination_heap_analytics"

MAIN_REQUIREMENTS = [
    "airbyte-cdk>=7.39,<8",
    "orjson>=3.10,<4",
    "requests>=2.32,<3",
    "pendulum>=3.0,<4",
    "jsonschema>=4.17.3,<5",  # config validation against spec.json (already a CDK dependency)
    "typing_extensions>=4.4",  # @override on the CDK's methods (already a CDK dependency)
    "boto3>=1.36,<2",  # rejected records to the user's S3 bucket (object_storage_config)
]

TEST_REQUIREMENTS = [
    "pytest>=8,<10",
    "requests-mock>=1.12,<2",
    "hypothesis>=6.100,<7",
    "uv>=0.8,<1",  # integration_tests/test_package.py installs the built wheel with it
    "moto[server]>=5.1,<6",  # the S3 server of integration_tests/s3_server.py
]

DEV_REQUIREMENTS = [
    "ruff==0.17.6",
    "import-linter>=2.1,<3",  # `make lint` checks the layering of docs/architecture.md
]


def single_source_version() -> str:
    """Read `__version__` from the package's _version.py.

    Running that one file, rather than importing the package, keeps setup.py working before
    airbyte-cdk and the other dependencies are installed.
    """
    return runpy.run_path(str(HERE / PACKAGE / "_version.py"))["__version__"]


setup(
    name="airbyte-destination-heap-analytics",
    version=single_source_version(),
    description="Airbyte destination that loads records into Heap Analytics.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="destination-heap-analytics maintainers",
    license_expression="MIT",
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
    ],
    packages=find_packages(exclude=("unit_tests*", "integration_tests*", "bench*")),
    install_requires=MAIN_REQUIREMENTS,
    package_data={PACKAGE: ["spec.json"]},
    python_requires=">=3.10,<3.15",
    extras_require={"tests": TEST_REQUIREMENTS, "dev": DEV_REQUIREMENTS},
    entry_points={
        "console_scripts": [
            "destination-heap-analytics=destination_heap_analytics.run:run",
        ],
    },
)
