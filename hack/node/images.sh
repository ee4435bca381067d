#!/bin/bash
echo "stub load"
