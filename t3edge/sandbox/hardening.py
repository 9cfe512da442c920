"""Friendlier first-layer checks added to the interpreter inside the sandbox process.

The kernel layers (Landlock, seccomp, resource limits) hold whatever the code does; these checks
turn two known tricks into clear errors instead of silent results:

- format strings that walk attributes (`'{0.__globals__}'.format(f)`), which smolagents'
  interpreter does not see because the walk happens inside `str.format`;
- OpenCV's own file functions, whose reads and writes in C bypass Python's audit hook (Landlock
  still refuses them, but OpenCV then just returns None/False).
"""

from __future__ import annotations

import ast
import string
from collections.abc import Callable
from types import BuiltinMethodType
from typing import Any

from smolagents import local_python_executor as lpe

from t3edge.sandbox.policy import FileView

FORMAT_METHODS = ("format", "format_map")
_HIDDEN = "_t3edge_format_target"
_CV2_PATH_FUNCTIONS = {  # name -> writes?
    "imread": False, "imreadmulti": False, "imwrite": True, "imwritemulti": True,
    "VideoCapture": False, "VideoWriter": True, "CascadeClassifier": False, "FileStorage": False,
    "haveImageReader": False,
}


def check_template(template: str) -> None:
    """Refuse format fields that reach dunder attributes or items."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return  # str.format raises its own error for a malformed template
    for _, field, spec, _ in fields:
        if (field and "__" in field) or (spec and "__" in spec):
            raise lpe.InterpreterError(
                f"Forbidden format field {field!r}: format strings may not access dunder attributes"
            )


def _check_value(result: Any, *args: Any, **kwargs: Any) -> None:
    if result is str.format or result is str.format_map:
        raise lpe.InterpreterError("Call format on the template itself, e.g. 'x = {}'.format(x)")
    if (isinstance(result, BuiltinMethodType) and result.__name__ in FORMAT_METHODS
            and isinstance(getattr(result, "__self__", None), str)):
        check_template(result.__self__)


def guard_format_strings() -> None:
    """Check every `str.format`/`format_map` template the interpreter can reach."""
    original_call = lpe.evaluate_call
    original_check = lpe.check_safer_result

    def checked_result(result: Any, *args: Any, **kwargs: Any) -> None:
        _check_value(result)
        original_check(result, *args, **kwargs)

    def guarded_call(call: ast.Call, state: dict[str, Any], *rest: Any) -> Any:
        func = call.func
        if not (isinstance(func, ast.Attribute) and func.attr in FORMAT_METHODS):
            return original_call(call, state, *rest)
        target = lpe.evaluate_ast(func.value, state, *rest)  # evaluated once, then reused
        if target is str:
            raise lpe.InterpreterError("Call format on the template itself, e.g. 'x = {}'.format(x)")
        if isinstance(target, str):
            check_template(target)
        state[_HIDDEN] = target
        try:
            rewritten = ast.Call(
                func=ast.Attribute(value=ast.Name(id=_HIDDEN, ctx=ast.Load()), attr=func.attr, ctx=ast.Load()),
                args=call.args, keywords=call.keywords,
            )
            return original_call(ast.fix_missing_locations(ast.copy_location(rewritten, call)), state, *rest)
        finally:
            state.pop(_HIDDEN, None)

    lpe.evaluate_call = guarded_call
    lpe.check_safer_result = checked_result


def _path_checked(func: Callable[..., Any], name: str, writes: bool, view: FileView) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        target = args[0] if args else kwargs.get("filename")
        if isinstance(target, str) and target and not view.allows(target, writes):
            raise PermissionError(
                f"sandbox: cv2.{name} may only {'write' if writes else 'read'} files in the working "
                f"folder{'' if writes else ' or the attached files'}, not {target}"
            )
        return func(*args, **kwargs)

    wrapper.__name__ = name
    wrapper.__doc__ = func.__doc__
    return wrapper


def guard_opencv(view: FileView) -> None:
    """Wrap OpenCV's path-taking functions with the sandbox's file view."""
    import cv2

    for name, writes in _CV2_PATH_FUNCTIONS.items():
        func = getattr(cv2, name, None)
        if func is not None:
            setattr(cv2, name, _path_checked(func, name, writes, view))
