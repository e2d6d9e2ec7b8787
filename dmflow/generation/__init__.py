"""Question generation: the `QuestionGenerator` protocol, its implementations, cleaning."""

from dmflow.generation.base import GeneratedBatch, GenerationFailed, QuestionGenerator

__all__ = ["GeneratedBatch", "GenerationFailed", "QuestionGenerator"]
