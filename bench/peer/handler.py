"""The Python peer of `make bench`: a Python 3.11 handler that, like the Rust function it stands
beside, creates its boto3 clients once at init (PEER_CLIENTS, comma-separated service names),
then handles the same no-AWS-call event the same way: a Control Tower FAILED event is skipped, a
custom-resource Delete is answered with a PUT to its ResponseURL, anything else is rejected."""

import json
import os
import urllib.request

import boto3

CLIENTS = {name: boto3.client(name) for name in os.environ["PEER_CLIENTS"].split(",") if name}


def handler(event, context):
    if isinstance(event, dict) and "ResponseURL" in event:
        body = json.dumps({
            "Status": "SUCCESS",
            "Reason": "nothing to do",
            "PhysicalResourceId": event.get("PhysicalResourceId", "none"),
            "StackId": event.get("StackId"),
            "RequestId": event.get("RequestId"),
            "LogicalResourceId": event.get("LogicalResourceId"),
        }).encode()
        req = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": ""})
        urllib.request.urlopen(req, timeout=10).read()
        return {"status": "SUCCESS"}
    detail = event.get("detail", {}) if isinstance(event, dict) else {}
    status = detail.get("serviceEventDetails", {}).get("createManagedAccountStatus", {})
    if status.get("state") == "FAILED":
        return {"outcome": "skipped", "reason": "Control Tower reported FAILED"}
    raise ValueError("input rejected before any AWS call")
