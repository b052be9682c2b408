"""Runner selection: local runs use Beam's in-process runner directly.

Beam's default DirectRunner first tries to download and start Prism (which fails offline and costs
seconds), then falls back. newsmon picks the in-process FnApiRunner itself for local batch runs.
Any explicit ``--runner`` (DataflowRunner, PrismRunner, …) is left alone.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

__all__ = ["local_runner", "make_pipeline"]

_LOCAL_NAMES = {None, "DirectRunner", "direct", "InProcessRunner"}


def local_runner(options: PipelineOptions):
    """The in-process FnApiRunner, provisioned with the pipeline options as DirectRunner would."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=info)


def make_pipeline(beam_args: list[str]) -> beam.Pipeline:
    options = PipelineOptions(beam_args)
    runner_name = options.view_as(StandardOptions).runner
    if runner_name in _LOCAL_NAMES:
        return beam.Pipeline(runner=local_runner(options), options=options)
    return beam.Pipeline(options=options)
