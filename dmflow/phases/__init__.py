"""The phase engines: generation and training as plain asyncio code over the store.

An engine decides what to ask, record, submit and poll, and when a phase is done or
failed. Whoever runs it supplies its steps (`dmflow.phases.steps`): `flows/` runs each
step as a Prefect task and reports to Prefect's log and artifacts; `DirectSteps` runs
them in-process, which is how the engines' rules are tested without a Prefect server.
"""
