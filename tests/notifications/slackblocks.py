"""Reading what the fake Slack received: a message's Block Kit blocks and their text."""

import json


def blocks_of(request) -> list[dict]:
    """The blocks of a chat.postMessage / chat.update call (sent as JSON or as a string)."""
    blocks = request["json"]["blocks"]
    return json.loads(blocks) if isinstance(blocks, str) else blocks


def blocks_text(blocks) -> str:
    """The text of the sections and mrkdwn context elements, one per line."""
    parts = []
    for block in blocks:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if element.get("type") == "mrkdwn":
                parts.append(element["text"])
    return "\n".join(parts)
