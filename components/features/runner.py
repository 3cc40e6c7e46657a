"""The local Beam runner of extraction: Beam's FnApiRunner, chosen up front.

Beam's ``DirectRunner`` first tries the Prism runner, which downloads a binary
from GitHub on first use; offline the download fails and it falls back to the
FnApiRunner (in memory, threads or processes, by ``--direct_running_mode``).
:class:`LocalRunner` is that fallback, named explicitly, so a local run never
tries the download and runs the same way on every machine, online or not.
``BeamOptions`` names it for ``DirectRunner`` (``options.LOCAL_RUNNER``)::

    options = BeamOptions(direct_num_workers=2).pipeline_options()   # --runner=components.features.runner.LocalRunner
    with beam.Pipeline(options=options) as pipeline: ...
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult, PipelineRunner


class LocalRunner(PipelineRunner):
    """Runs a batch pipeline on Beam's FnApiRunner, as the DirectRunner does once Prism has failed."""

    def run_pipeline(self, pipeline, options: PipelineOptions) -> PipelineResult:
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        # Worker processes read the pipeline options (pickler, file systems) from the provision info.
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        provision_info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=provision_info).run_pipeline(pipeline, options)
