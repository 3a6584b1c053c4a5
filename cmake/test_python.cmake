# The Python interpreter the Python tests run with: SR_PYTHON_EXECUTABLE if set, else Debian's
# /usr/bin/python3 first, then the one CMake finds (a python3 earlier on PATH, such as pyenv's,
# may lack NumPy and pytest). Used by bindings/python and samples/python/e2e.
set(SR_PYTHON_EXECUTABLE "" CACHE FILEPATH "Python interpreter for the Python tests (empty: search)")

# Sets `result` to the first candidate that imports numpy and pytest, or to "" if none does.
function(sr_find_test_python result)
  if(SR_PYTHON_EXECUTABLE)
    set(candidates ${SR_PYTHON_EXECUTABLE})
  else()
    set(candidates /usr/bin/python3)
    find_package(Python3 COMPONENTS Interpreter QUIET)
    if(Python3_EXECUTABLE)
      list(APPEND candidates ${Python3_EXECUTABLE})
    endif()
  endif()
  foreach(candidate IN LISTS candidates)
    if(EXISTS ${candidate})
      execute_process(COMMAND ${candidate} -c "import numpy, pytest" RESULT_VARIABLE probe OUTPUT_QUIET ERROR_QUIET)
      if(probe EQUAL 0)
        set(${result} ${candidate} PARENT_SCOPE)
        return()
      endif()
    endif()
  endforeach()
  set(${result} "" PARENT_SCOPE)
endfunction()
