"""Package layout for setuptools; everything else is in pyproject.toml.

`rollout` lives in src/ and `flows` at the top level. The top-level templates/ folder ships as
the package `rollout_templates`: each brand folder (and _base) is a data-only subpackage whose
brand.toml and *.j2 files are package data, so an installed wheel finds them through
importlib.resources. A new brand folder is picked up without editing this file.
(pyproject.toml alone cannot add a renamed folder to the packages it finds.)
"""

from setuptools import find_namespace_packages, find_packages, setup

TEMPLATES = "rollout_templates"
template_packages = [
    TEMPLATES,
    *(f"{TEMPLATES}.{name}" for name in find_namespace_packages("templates", exclude=["__*"])),
]

setup(
    packages=[
        *find_packages("src", include=["rollout", "rollout.*"]),
        *find_packages(".", include=["flows", "flows.*"]),
        *template_packages,
    ],
    package_dir={"": "src", "flows": "flows", TEMPLATES: "templates"},
    package_data={name: ["*.toml", "*.j2"] for name in template_packages},
)
