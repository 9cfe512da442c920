"""Web search: ddgs when web tools are on (t3edge[web]); a clear offline answer otherwise."""

from __future__ import annotations

from t3edge.tools.base import ToolContext, ToolError, tool


@tool
def ask_search_agent(ctx: ToolContext, query: str) -> str:
    """Search the web for a question and return a short report of the top results.

    Args:
        query: the question or keywords to search for
    """
    if not query.strip():
        raise ToolError("ask_search_agent needs a non-empty query")
    if not ctx.web:
        return (f"Web search is off (offline mode), so nothing was searched for {query!r}. "
                "Answer from the attached files and what you know.")
    try:
        from ddgs import DDGS
    except ImportError as exc:
        raise ToolError('web search needs the ddgs package: pip install "t3edge[web]"') from exc
    try:
        results = DDGS().text(query, max_results=5)
    except Exception as exc:  # ddgs raises its own exception family for network failures
        raise ToolError(f"web search failed: {exc}") from exc
    if not results:
        return f"No web results for {query!r}."
    return "\n\n".join(f"{r.get('title', '')}\n{r.get('href', '')}\n{r.get('body', '')}" for r in results)
