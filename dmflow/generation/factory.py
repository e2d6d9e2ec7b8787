"""Build the question generator a run asks for from its params and the settings."""

from __future__ import annotations

from dmflow.errors import ConfigurationError
from dmflow.generation.base import QuestionGenerator
from dmflow.generation.local import LocalQuestionGenerator
from dmflow.params import RunParams
from dmflow.settings import Settings


def build_generator(params: RunParams, settings: Settings) -> QuestionGenerator:
    if params.generator == "local":
        return LocalQuestionGenerator(params.questions_per_chunk)
    if settings.llm_api_key is None:
        raise ConfigurationError(
            "the openai generator needs an API key: set DMFLOW_LLM_API_KEY (and "
            "DMFLOW_LLM_BASE_URL for a non-OpenAI endpoint), or use --generator local"
        )
    # Imported here: the openai package takes about a second to import, which every
    # command with the local generator (the demo) would pay for nothing.
    from dmflow.generation.openai_compatible import (
        OpenAIGeneratorConfig,
        OpenAIQuestionGenerator,
    )

    return OpenAIQuestionGenerator(
        OpenAIGeneratorConfig(
            model=params.model or settings.llm_model,
            api_key=settings.llm_api_key,
            base_url=settings.llm_base_url,
            questions_per_chunk=params.questions_per_chunk,
            prompt=params.prompt,
            concurrency=settings.llm_concurrency,
            requests_per_minute=settings.llm_requests_per_minute,
            tokens_per_minute=settings.llm_tokens_per_minute,
            timeout_s=settings.llm_timeout_s,
            max_attempts=settings.llm_max_attempts,
            content_attempts=settings.llm_content_attempts,
            outage_wait_s=settings.llm_outage_wait_s,
            cost_per_1k_prompt_tokens=settings.llm_cost_per_1k_prompt_tokens,
            cost_per_1k_completion_tokens=settings.llm_cost_per_1k_completion_tokens,
        )
    )
