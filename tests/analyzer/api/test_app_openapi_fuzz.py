"""The analyzer's API under an independent fuzzer: schemathesis generates requests from the
app's own OpenAPI document, valid and invalid ones, with the token, and checks every answer:
no 5xx; a status code, content type, headers and body the document declares; invalid input
refused.

The app runs in-process over ASGI, over a store that already judges slices (lossy video,
clean egov), so the read operations answer with real verdicts, paths and hints. Examples per
operation are bounded so that the whole run stays well under two minutes.

Left out: schemathesis's "schema-valid request accepted" check. The document describes less
than the API checks (a window's counts must add up, a probe target is any string, a hint
kind any string, `dst` any name), so a request the document allows may rightly get a 400.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from tests.api_support import AUTH, Api, lossy_video

EXAMPLES_PER_OPERATION = 40

api = Api(openapi=True)  # the document is served only when asked for
lossy_video(api)
schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
schema.config.generation.update(modes=list(GenerationMode), max_examples=EXAMPLES_PER_OPERATION)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_schema_says(case):
    case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])
