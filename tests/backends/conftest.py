"""One local SparkSession for every Spark test (session-scoped: the JVM starts once)."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture(scope="session")
def spark_session():
    """A ``local[2]`` session shared by the whole run. Spark tests skip only when no Java runtime
    is installed (CI has Java 17); pyspark itself comes with the test extras, so its absence fails."""
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        pytest.skip("no Java runtime (java on PATH or JAVA_HOME): the Spark backend cannot start")
    from pyspark.sql import SparkSession

    from dplogs.backends.spark import spark_session as start

    session = start("local[2]")
    # tiny test inputs: few shuffle partitions keep each query to a handful of tasks
    session.conf.set("spark.sql.shuffle.partitions", "2")
    session.conf.set("spark.sql.adaptive.enabled", "false")
    # compiling whole-stage Java code costs more than it saves on inputs of a few rows
    session.conf.set("spark.sql.codegen.wholeStage", "false")
    yield session
    if SparkSession.getActiveSession() is session:
        session.stop()
