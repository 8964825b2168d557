"""Campaign rendering: merge tags (engine), CSS inlining (inline), text part (text).

Callers use `compile_message` once per campaign and `CompiledMessage.render` per recipient.
"""

from campaigns.rendering.engine import (
    ContextError,
    RenderLimitError,
    TemplateError,
    compile_template,
    unresolved_tags,
    validate_context,
)
from campaigns.rendering.render import CompiledMessage, RenderedMessage, compile_message

__all__ = [
    "CompiledMessage",
    "ContextError",
    "RenderLimitError",
    "RenderedMessage",
    "TemplateError",
    "compile_message",
    "compile_template",
    "unresolved_tags",
    "validate_context",
]
