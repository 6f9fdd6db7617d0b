from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Development tools: the demo program (seed_demo) and the benchmarks (bench_*). Not needed in production."""

    name = "devtools"
    verbose_name = "Development tools"
