"""Friendlier first-layer checks added to the interpreter inside the sandbox process.

The kernel layers (Landlock, seccomp, resource limits) hold whatever the code does; these checks
turn known tricks into clear errors instead of silent results:

- frames, code objects and tracebacks, reachable without dunder names (`os.walk('.').gi_frame`,
  `.gi_code`, `tb_frame`), from which code could rebuild functions outside the interpreter;
- format strings that walk attributes (`'{0.__globals__}'.format(f)`), and `attrgetter` or
  `methodcaller` objects of dunder names (several libraries expose `operator.attrgetter`), which
  smolagents' interpreter does not see because the walk happens inside them;
- pandas expressions (`df.eval`, `df.query`, `pd.eval`) that walk dunder attributes, which
  pandas evaluates itself;
- assigning attributes of modules (`os.fsdecode = ...`, `json.dumps = ...`): shared modules
  are not the code's to change;
- XSLT stylesheets that read or write files themselves (lxml does it in C);
- OpenCV's own file functions, whose reads and writes in C bypass Python's audit hook (Landlock
  still refuses them, but OpenCV then just returns None/False), and OpenCV's helper that runs a
  Python file.
"""

from __future__ import annotations

import ast
import operator
import re
import string
import sys
from collections.abc import Callable
from types import BuiltinMethodType, CodeType, FrameType, ModuleType, TracebackType
from typing import Any

from smolagents import local_python_executor as lpe

from t3edge.sandbox.policy import FileView

FORMAT_METHODS = ("format", "format_map")
_HIDDEN = "_t3edge_format_target"
FRAME_ATTRIBUTES = {"gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "tb_frame",
                    "tb_next", "f_back", "f_code", "f_globals", "f_locals", "f_builtins"}
RESERVED_NAMES = {"_print_outputs", "_operations_count", _HIDDEN}  # the interpreter's own state
_CV2_PATH_FUNCTIONS = {  # name -> writes? (FileStorage: its flags say)
    "imread": False, "imreadmulti": False, "imcount": False, "imreadanimation": False,
    "imwrite": True, "imwritemulti": True, "imwriteanimation": True, "VideoCapture": False,
    "VideoWriter": True, "CascadeClassifier": False, "FileStorage": False, "haveImageReader": False,
    "readOpticalFlow": False, "writeOpticalFlow": True,
}
_FILE_STORAGE_WRITE_OR_APPEND, _FILE_STORAGE_MEMORY = 1 | 2, 4


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
    if isinstance(result, (FrameType, CodeType, TracebackType)):
        kind = {FrameType: "frame", CodeType: "code object", TracebackType: "traceback"}[type(result)]
        raise lpe.InterpreterError(f"Forbidden access to the interpreter's internals: a {kind}")
    if isinstance(result, (operator.attrgetter, operator.methodcaller)):
        names = set(re.findall(r"\w+", repr(result)))
        if any("__" in name for name in names) or names & FRAME_ATTRIBUTES:
            raise lpe.InterpreterError(
                f"Forbidden {type(result).__name__} of dunder or frame attributes: {result!r}")


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


def guard_module_attributes() -> None:
    """Refuse `module.name = value` (and `+=`): the interpreter's and the libraries' modules stay
    as they are; and assignments to the interpreter's own state variables."""
    original_set = lpe.set_value

    def checked_set(target: ast.AST, value: Any, state: dict[str, Any], *rest: Any) -> None:
        if isinstance(target, ast.Name) and target.id in RESERVED_NAMES:
            raise lpe.InterpreterError(f"Cannot assign to {target.id}: the interpreter uses that name")
        if not isinstance(target, ast.Attribute):
            return original_set(target, value, state, *rest)
        owner = lpe.evaluate_ast(target.value, state, *rest)  # evaluated once, then reused
        if isinstance(owner, ModuleType):
            raise lpe.InterpreterError(
                f"Cannot assign to {owner.__name__}.{target.attr}: modules may not be changed; "
                "use a variable of your own instead")
        state[_HIDDEN] = owner
        try:
            hidden = ast.Attribute(value=ast.Name(id=_HIDDEN, ctx=ast.Load()), attr=target.attr, ctx=ast.Store())
            return original_set(hidden, value, state, *rest)
        finally:
            state.pop(_HIDDEN, None)

    lpe.set_value = checked_set


def _check_pandas_expression(original: Callable[..., Any]) -> Callable[..., Any]:
    def checked_eval(expr: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(expr, str) and "__" in expr:
            raise lpe.InterpreterError("pandas expressions may not use dunder names (__...__)")
        return original(expr, *args, **kwargs)

    checked_eval.__doc__ = original.__doc__
    return checked_eval


def guard_pandas_eval() -> None:
    """Check pandas' expression evaluator once pandas is imported (it is not preloaded)."""
    original_import = lpe.evaluate_import
    done = [False]

    def import_then_guard(*args: Any, **kwargs: Any) -> Any:
        result = original_import(*args, **kwargs)
        module = sys.modules.get("pandas.core.computation.eval")
        if module is not None and not done[0]:
            done[0] = True
            module.eval = sys.modules["pandas"].eval = _check_pandas_expression(module.eval)
        return result

    lpe.evaluate_import = import_then_guard


def guard_xslt() -> None:
    """XSLT stylesheets (`pandas.read_xml(stylesheet=...)`, `DataFrame.to_xml`) may not read or
    write files or URLs themselves (`document()`, `exsl:document`): lxml does that in C."""
    try:
        from lxml import etree
    except ImportError:
        return
    original, deny = etree.XSLT, etree.XSLTAccessControl.DENY_ALL

    def xslt(xslt_input: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["access_control"] = deny
        return original(xslt_input, *args, **kwargs)

    xslt.__doc__ = original.__doc__
    etree.XSLT = xslt


def _path_checked(func: Callable[..., Any], name: str, writes: bool, view: FileView) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        target = args[0] if args else kwargs.get("filename", kwargs.get("path"))
        write = writes
        if name == "FileStorage":
            flags = args[1] if len(args) > 1 else kwargs.get("flags", 0)
            if isinstance(flags, int) and flags & _FILE_STORAGE_MEMORY:
                target = None  # the text itself, not a file
            write = isinstance(flags, int) and bool(flags & _FILE_STORAGE_WRITE_OR_APPEND)
        if target is None or isinstance(target, int) or target == "":  # no file, or a camera index
            return func(*args, **kwargs)
        if not isinstance(target, str):
            raise PermissionError(f"sandbox: give cv2.{name} the path as text, not a {type(target).__name__}")
        if not view.allows(target, write):
            raise PermissionError(
                f"sandbox: cv2.{name} may only {'write' if write else 'read'} files in the working "
                f"folder{'' if write else ' or the attached files'}, not {target}"
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
    config = getattr(cv2, "load_config_py3", None)
    if config is not None:
        config.exec_file_wrapper = _refuse_exec_file


def _refuse_exec_file(*args: Any, **kwargs: Any) -> None:
    raise PermissionError("sandbox: running Python files is not allowed")


def harden_interpreter(view: FileView) -> None:
    """Every check of this module, installed in the sandbox process before it runs any code."""
    guard_format_strings()
    guard_module_attributes()
    guard_pandas_eval()
    guard_xslt()
    guard_opencv(view)
