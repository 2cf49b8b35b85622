# Copyright 2026 The r3-plugin Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Dataset builders: countdown and function calling as verl parquet files (``r3 data ...``).

``build_countdown(...)`` and ``build_function_calling(...)`` write ``train.parquet`` and
``test.parquet`` under ``~/data/r3/<task>/`` by default (the paths the recipes use) and return them.
``write_task_data(data_source, records, output_dir)`` does the same for a task of your own.
"""

from r3_plugin.tools.data.countdown import DEFAULT_OUTPUT_DIR as COUNTDOWN_OUTPUT_DIR
from r3_plugin.tools.data.countdown import build_countdown
from r3_plugin.tools.data.function_calling import DEFAULT_OUTPUT_DIR as FUNCTION_CALLING_OUTPUT_DIR
from r3_plugin.tools.data.function_calling import build_function_calling
from r3_plugin.tools.data.io import DataBuildError
from r3_plugin.tools.data.own_task import task_row, write_task_data

__all__ = [
    "COUNTDOWN_OUTPUT_DIR",
    "FUNCTION_CALLING_OUTPUT_DIR",
    "DataBuildError",
    "build_countdown",
    "task_row",
    "write_task_data",
    "build_function_calling",
]
