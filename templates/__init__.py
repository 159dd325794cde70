"""Brand settings and e-mail templates, as data: `<brand>/brand.toml` and `<brand>/*.j2`.

Installed as the package `rollout_templates` (see pyproject.toml), so a wheel carries them;
`rollout.brands.templates_root()` finds this folder through importlib.resources.
"""
