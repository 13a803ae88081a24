import math


def circle_area(radius):
    return 


def fibonacci(n):
    if n < 2:
        return n
