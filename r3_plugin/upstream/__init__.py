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
"""The upstream contribution: R3 as a patch series against verl 0.9.1, generated from this package.

The files a verl maintainer would review (a countdown scorer, the R3 agent loop, examples, a docs
page, CPU tests) are produced from the plugin's own modules by source transforms
(:mod:`.transform`), so the plugin and the series cannot drift: ``r3 patches check`` fails as soon
as the committed ``patches/`` differ from what the current code generates.
"""
