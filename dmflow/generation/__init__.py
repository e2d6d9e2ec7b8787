"""Question generation: the `QuestionGenerator` protocol, its implementations, cleaning."""

from dmflow.generation.base import GenerationFailed, QuestionGenerator

__all__ = ["GenerationFailed", "QuestionGenerator"]
