"""Runner selection: local runs use Beam's in-process runner directly.

Beam's default DirectRunner first tries to download and start Prism (which fails offline and costs
seconds), then falls back. newsmon picks the in-process FnApiRunner itself for local batch runs.
Any explicit ``--runner`` (DataflowRunner, PrismRunner, …) is left alone.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

__all__ = ["describe_result", "is_local", "local_runner", "make_pipeline"]

_LOCAL_NAMES = {None, "DirectRunner", "direct", "InProcessRunner"}


def local_runner(options: PipelineOptions):
    """The in-process FnApiRunner, provisioned with the pipeline options as DirectRunner would."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=info)


def is_local(beam_args: list[str]) -> bool:
    return PipelineOptions(beam_args).view_as(StandardOptions).runner in _LOCAL_NAMES


def make_pipeline(beam_args: list[str], *, streaming: bool = False, pubsub: bool = False) -> beam.Pipeline:
    """A pipeline on the runner the options name, or the right local runner.

    ``streaming`` marks unbounded jobs (Dataflow needs --streaming). Locally the FnApiRunner runs the
    feed source fine, but Pub/Sub reads need Beam's bundle-based direct runner in streaming mode.
    """
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    runner_name = standard.runner
    if runner_name in _LOCAL_NAMES:
        if pubsub:
            from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

            standard.streaming = True
            return beam.Pipeline(runner=BundleBasedDirectRunner(), options=options)
        return beam.Pipeline(runner=local_runner(options), options=options)
    if streaming:
        standard.streaming = True
    return beam.Pipeline(options=options)


def describe_result(result: object) -> str:
    """Job id and state of a submitted pipeline. A Flex Template launch or a dry run creates no job
    (``has_job`` is false and ``job_id()`` would raise), which is not an error."""
    if getattr(result, "has_job", True) is False:
        return "no job created here: dry run or template launch"
    job_id = getattr(result, "job_id", None)
    try:
        ident = job_id() if callable(job_id) else job_id
    except AttributeError:
        ident = None
    return f"job {ident or '-'}, state {getattr(result, 'state', 'unknown')}"
