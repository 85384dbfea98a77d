"""Index Education exports (design.md §8, §8a): safe streaming, zip, encrypted container, the clear
timetable, its checks and the cité scolaire split."""
