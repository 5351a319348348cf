"""Packaging for destination-heap-analytics (console script of the same name)."""

from setuptools import find_packages, setup

MAIN_REQUIREMENTS = [
    "airbyte-cdk>=7.39,<8",
    "orjson>=3.10,<4",
    "requests>=2.32,<3",
    "pendulum>=3.0,<4",
    "jsonschema>=4.17.3,<5",  # config validation against spec.json (already a CDK dependency)
]

TEST_REQUIREMENTS = [
    "pytest>=8,<10",
    "requests-mock>=1.12,<2",
    "hypothesis>=6.100,<7",
]

DEV_REQUIREMENTS = ["ruff==0.17.6"]

setup(
    name="destination_heap_analytics",
    version="0.2.0",
    description="Airbyte destination that loads records into Heap Analytics.",
    author="destination-heap-analytics maintainers",
    packages=find_packages(exclude=("unit_tests", "integration_tests", "bench")),
    install_requires=MAIN_REQUIREMENTS,
    package_data={"destination_heap_analytics": ["spec.json"]},
    python_requires=">=3.10,<3.15",
    extras_require={"tests": TEST_REQUIREMENTS, "dev": DEV_REQUIREMENTS},
    entry_points={
        "console_scripts": [
            "destination-heap-analytics=destination_heap_analytics.run:run",
        ],
    },
)
